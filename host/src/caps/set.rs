//! The set of capabilities, listed once. From this list come the manifest's
//! capability names and which imports need which ([`Capability`]), the
//! pipeline's `grants` type and its checks ([`Grants`]), what an attempt
//! carries once its grants are resolved ([`Prepared`]), the store's
//! per-attempt state ([`States`]) and the linker ([`link_all`]).
//!
//! Adding a capability: a module under `caps/` implementing
//! [`Cap`](super::capability::Capability), one line here, its interface in
//! `wit/plugin.wit` and the bindings' `with`/async entries.

use serde::{Deserialize, Serialize};
use wasmtime::component::{Linker, ResourceTable};

use super::capability::{Capability as Cap, PrepareCtx, Slot, TaskCtx, TaskData, View};

/// WASI packages every plugin may import (sockets are linked, but every
/// address is denied: outbound traffic goes through `http`).
const BASE_PACKAGES: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:io",
    "wasi:random",
    "wasi:sockets",
];

macro_rules! capabilities {
    (
        base { $($bfield:ident: $B:ty),* $(,)? }
        granted { $($field:ident: $Variant:ident = $C:ty),* $(,)? }
        exported { $($EVariant:ident = $ename:literal),* $(,)? }
    ) => {
        /// A capability a plugin may declare: one a pipeline grants, or
        /// one its exports need (`approval`: suspension).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Capability {
            $($Variant,)*
            $($EVariant,)*
        }

        impl Capability {
            pub const ALL: &'static [Capability] =
                &[$(Capability::$Variant,)* $(Capability::$EVariant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Capability::$Variant => <$C as Cap>::NAME,)*
                    $(Capability::$EVariant => $ename,)*
                }
            }

            /// The capability an imported interface (`package/interface`,
            /// no version) needs, if a granted one does.
            pub fn for_interface(iface: &str) -> Option<Capability> {
                $(
                    if <$C as Cap>::INTERFACES.contains(&iface) {
                        return Some(Capability::$Variant);
                    }
                )*
                None
            }
        }

        /// Whether every plugin may import `iface` (`package/interface`, no
        /// version) without declaring anything.
        pub fn is_base_interface(iface: &str) -> bool {
            let package = iface.split_once('/').map_or(iface, |(p, _)| p);
            BASE_PACKAGES.contains(&package)
                || iface == "capstan:plugin/types"
                $(|| <$B as Cap>::INTERFACES.contains(&iface))*
        }

        /// A task's `grants:`: one list per capability, each naming concrete
        /// scopes; nothing is granted that is not listed.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct Grants {
            $(
                #[serde(default, skip_serializing_if = "Vec::is_empty")]
                pub $field: Vec<<$C as Cap>::Grant>,
            )*
        }

        impl Grants {
            pub fn is_empty(&self) -> bool {
                true $(&& self.$field.is_empty())*
            }

            /// Capabilities this grant gives something to, with the YAML
            /// field name (`secrets` too for a grant whose secrets can
            /// reach the plugin, at that grant's field).
            pub fn granted(&self) -> Vec<(Capability, &'static str)> {
                let mut out = Vec::new();
                $(
                    if !self.$field.is_empty() {
                        out.push((Capability::$Variant, <$C as Cap>::NAME));
                    }
                    if <$C as Cap>::SECRETS_REACH_PLUGIN
                        && self.$field.iter().any(|g| !<$C as Cap>::secret_names(g).is_empty())
                    {
                        out.push((Capability::Secrets, <$C as Cap>::NAME));
                    }
                )*
                out
            }

            /// Each grant's shape; problems come with their path under
            /// `grants` (`ssh[0].secret`).
            pub fn check(&self, report: &mut dyn FnMut(String, String)) {
                $(
                    for (i, g) in self.$field.iter().enumerate() {
                        <$C as Cap>::check(g, &mut |field, message| {
                            let name = <$C as Cap>::NAME;
                            let path = if field.is_empty() {
                                format!("{name}[{i}]")
                            } else {
                                format!("{name}[{i}].{field}")
                            };
                            report(path, message)
                        });
                    }
                )*
            }

            /// Every secret these grants name.
            pub fn secret_names(&self) -> Vec<&str> {
                let mut out = Vec::new();
                $(
                    for g in &self.$field {
                        out.extend(<$C as Cap>::secret_names(g));
                    }
                )*
                out
            }

            /// Resolve the grants for one attempt.
            pub fn prepare(&self, ctx: &PrepareCtx<'_>) -> Result<Prepared, String> {
                Ok(Prepared {
                    $($field: <$C as Cap>::prepare(&self.$field, ctx)?,)*
                })
            }
        }

        /// A task's grants resolved for one attempt.
        pub struct Prepared {
            $(pub $field: <$C as Cap>::Prepared,)*
        }

        /// Every capability's state for one attempt, with the resource table
        /// they share with WASI and the attempt's context.
        pub struct States {
            pub table: ResourceTable,
            pub task: TaskCtx,
            $(pub $bfield: <$B as Cap>::State,)*
            $(pub $field: <$C as Cap>::State,)*
        }

        impl States {
            pub fn new(table: ResourceTable, task: TaskCtx, prepared: Prepared) -> States {
                States {
                    $($bfield: <$B as Cap>::instantiate((), &task),)*
                    $($field: <$C as Cap>::instantiate(prepared.$field, &task),)*
                    table,
                    task,
                }
            }
        }

        $(
            impl Slot<$B> for States {
                fn view(&mut self) -> View<'_, <$B as Cap>::State> {
                    View { state: &mut self.$bfield, table: &mut self.table, task: &self.task }
                }
            }
        )*
        $(
            impl Slot<$C> for States {
                fn view(&mut self) -> View<'_, <$C as Cap>::State> {
                    View { state: &mut self.$field, table: &mut self.table, task: &self.task }
                }
            }
        )*

        /// Link every capability's bindings.
        pub fn link_all<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
            $(<$B as Cap>::link(linker)?;)*
            $(<$C as Cap>::link(linker)?;)*
            Ok(())
        }

        #[cfg(test)]
        const FIELD_NAMES: &[(&str, &str)] = &[$((stringify!($field), <$C as Cap>::NAME),)*];
    };
}

capabilities! {
    base {
        log: super::log::LogCap,
        files: super::files::FilesCap,
        digest: super::digest::DigestCap,
    }
    granted {
        http: Http = super::http::HttpCap,
        secrets: Secrets = super::secrets::SecretsCap,
        ssh: Ssh = super::ssh::SshCap,
        kube: Kube = super::kube::KubeCap,
        container: Container = super::container::ContainerCap,
    }
    exported {
        Approval = "approval",
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Capability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Capability::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Capability::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown capability `{s}` (one of: {})", names.join(", "))
            })
    }
}

impl Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `grants` field of each capability is its name.
    #[test]
    fn grant_fields_are_the_capability_names() {
        for (field, name) in FIELD_NAMES {
            assert_eq!(field, name);
        }
    }

    #[test]
    fn names_round_trip_and_imports_classify() {
        for c in Capability::ALL {
            assert_eq!(c.as_str().parse::<Capability>().unwrap(), *c);
        }
        assert!("root".parse::<Capability>().is_err());
        assert_eq!(
            Capability::for_interface("wasi:http/outgoing-handler"),
            Some(Capability::Http)
        );
        assert_eq!(
            Capability::for_interface("capstan:plugin/ssh"),
            Some(Capability::Ssh)
        );
        assert!(is_base_interface("capstan:plugin/files"));
        assert!(is_base_interface("wasi:filesystem/types"));
        assert!(!is_base_interface("capstan:plugin/kube"));
        assert!(!is_base_interface("wasi:http/types"));
    }
}
