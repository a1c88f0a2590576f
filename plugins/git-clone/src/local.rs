//! `file://` repositories: read refs and objects from a repository
//! directory the task can see (a read-only workspace), as `git clone
//! /path` does: the object store is copied, so `depth` does not apply.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use gix_hash::{ObjectId, oid};

use crate::pack::{Object, Pack};
use crate::protocol::Ref;
use crate::worktree::Objects;

const HASH: gix_hash::Kind = gix_hash::Kind::Sha1;

pub struct LocalRepo {
    /// The git directory (bare repository, or `.git` of a work tree).
    pub git_dir: PathBuf,
    packs: Vec<Pack>,
}

fn read_oid(text: &str, what: &str) -> Result<ObjectId, String> {
    ObjectId::from_hex(text.trim().as_bytes()).map_err(|_| format!("{what}: not an object id"))
}

impl LocalRepo {
    pub fn open(path: &Path) -> Result<LocalRepo, String> {
        let git_dir = if path.join(".git").is_dir() {
            path.join(".git")
        } else {
            path.to_path_buf()
        };
        if !git_dir.join("objects").is_dir() || !git_dir.join("HEAD").is_file() {
            return Err(format!(
                "{}: not a git repository (or not visible to the task: bind its directory as the \
                 read-only workspace `repository` and use file:///workspace/repository/…)",
                path.display()
            ));
        }
        let mut packs = Vec::new();
        let pack_dir = git_dir.join("objects/pack");
        if let Ok(entries) = std::fs::read_dir(&pack_dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "pack") {
                    let read = |p: &Path| {
                        std::fs::read(p).map_err(|err| format!("reading {}: {err}", p.display()))
                    };
                    let bytes = read(&e.path())?;
                    // With its .idx the pack opens without resolving every
                    // object (reads are verified); without, it is indexed.
                    let idx_path = e.path().with_extension("idx");
                    let pack = match idx_path.is_file() {
                        true => Pack::open(bytes, read(&idx_path)?),
                        false => Pack::index(bytes),
                    };
                    packs.push(pack.map_err(|err| format!("{}: {err}", e.path().display()))?);
                }
            }
        }
        Ok(LocalRepo { git_dir, packs })
    }

    /// HEAD (with its target branch), branches and tags.
    pub fn refs(&self) -> Result<Vec<Ref>, String> {
        let mut refs: HashMap<String, Ref> = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(self.git_dir.join("packed-refs")) {
            let mut last: Option<String> = None;
            for line in text.lines() {
                if line.starts_with('#') || line.is_empty() {
                    continue;
                }
                if let Some(peeled) = line.strip_prefix('^') {
                    if let Some(r) = last.as_ref().and_then(|n| refs.get_mut(n)) {
                        r.peeled = Some(read_oid(peeled, "packed-refs")?);
                    }
                    continue;
                }
                let (hex, name) = line.split_once(' ').ok_or("packed-refs: malformed line")?;
                refs.insert(
                    name.to_string(),
                    Ref {
                        name: name.to_string(),
                        oid: read_oid(hex, "packed-refs")?,
                        peeled: None,
                        symref_target: None,
                    },
                );
                last = Some(name.to_string());
            }
        }
        let mut stack = vec![
            self.git_dir.join("refs/heads"),
            self.git_dir.join("refs/tags"),
        ];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let name = p
                    .strip_prefix(&self.git_dir)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                let text = std::fs::read_to_string(&p).map_err(|e| format!("{name}: {e}"))?;
                refs.insert(
                    name.clone(),
                    Ref {
                        oid: read_oid(&text, &name)?,
                        name,
                        peeled: None,
                        symref_target: None,
                    },
                );
            }
        }
        let head =
            std::fs::read_to_string(self.git_dir.join("HEAD")).map_err(|e| format!("HEAD: {e}"))?;
        let mut out: Vec<Ref> = Vec::new();
        if let Some(target) = head.trim().strip_prefix("ref: ") {
            if let Some(r) = refs.get(target) {
                out.push(Ref {
                    name: "HEAD".into(),
                    oid: r.oid,
                    peeled: None,
                    symref_target: Some(target.to_string()),
                });
            }
        } else {
            out.push(Ref {
                name: "HEAD".into(),
                oid: read_oid(&head, "HEAD")?,
                peeled: None,
                symref_target: None,
            });
        }
        let mut rest: Vec<Ref> = refs.into_values().collect();
        rest.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(rest);
        Ok(out)
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.git_dir.join("objects")
    }
}

impl Objects for LocalRepo {
    fn find(&self, id: &oid) -> Result<Object, String> {
        let hex = id.to_string();
        let loose = self.git_dir.join("objects").join(&hex[..2]).join(&hex[2..]);
        if let Ok(compressed) = std::fs::read(&loose) {
            let data = inflate_all(&compressed).map_err(|e| format!("object {hex}: {e}"))?;
            let (kind, size, header) = gix_object::decode::loose_header(&data)
                .map_err(|e| format!("object {hex}: {e}"))?;
            let body = data[header..].to_vec();
            if body.len() as u64 != size {
                return Err(format!("object {hex}: size does not match its header"));
            }
            let actual = gix_object::compute_hash(HASH, kind, &body).map_err(|e| e.to_string())?;
            if actual != id {
                return Err(format!("object {hex}: content hashes to {actual}"));
            }
            return Ok((kind, Rc::new(body)));
        }
        for p in &self.packs {
            if p.contains(id) {
                return p.find(id);
            }
        }
        Err(format!("object {hex} is not in the repository"))
    }

    fn contains(&self, id: &oid) -> bool {
        let hex = id.to_string();
        self.packs.iter().any(|p| p.contains(id))
            || self
                .git_dir
                .join("objects")
                .join(&hex[..2])
                .join(&hex[2..])
                .is_file()
    }
}

fn inflate_all(input: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut scratch = vec![0u8; 64 * 1024];
    crate::pack::inflate_stream(input, &mut scratch, &mut |chunk| {
        out.extend_from_slice(chunk);
        Ok(())
    })?;
    Ok(out)
}
