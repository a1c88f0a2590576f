//! Kubernetes mode: the CRDs ([`crd`]), the controller that executes
//! `PipelineRun`s in-process ([`controller`]), its pure steps ([`build`]),
//! and leader election ([`lease`]).

pub mod build;
pub mod controller;
pub mod crd;
pub mod lease;
