//! Kubernetes mode: the CRDs ([`crd`], all of them as YAML: [`crds`]), the controller that executes
//! `PipelineRun`s in-process ([`controller`]), its pure steps ([`build`]),
//! leader election ([`lease`]), and the `Repository` resources of the
//! forge integration ([`repository`]).

pub mod build;
pub mod controller;
pub mod crd;
pub mod crds;
pub mod lease;
pub mod repository;
