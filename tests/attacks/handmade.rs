//! Hand-assembled attack components, built by `tests/build.rs` (which
//! includes this file): the attacks a Rust compiler will not emit — table
//! growth, several linear memories, a start function that never returns, a
//! 4 GiB initial memory — and malformed artifacts: a core module, the wrong
//! world, the right interface with the wrong types, a newer WASI import, a
//! broken or missing manifest, a truncated component.
//!
//! Each is a core module written with `wasm-encoder` that speaks the task
//! ABI by hand (`run` takes the flattened `task-input`, returns a pointer to
//! `result<list<task-result>, task-error>`), wrapped into a component with
//! `wit-component` against the real `wit/` contract.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, Result};
use wasm_encoder::{
    AbstractHeapType, BlockType, CodeSection, ConstExpr, CustomSection, DataSection, EntityType,
    ExportKind, ExportSection, Function, FunctionSection, GlobalSection, GlobalType, HeapType,
    ImportSection, Instruction as I, MemArg, MemorySection, MemoryType, Module, RefType,
    StartSection, TableSection, TableType, TypeSection, ValType,
};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::Resolve;

const RUN: &str = "capstan:plugin/task@0.1.0#run";

/// What a hand-made task module contains besides the ABI plumbing.
#[derive(Default)]
struct Spec {
    /// Initial pages of memory 0 (default 2).
    min_pages: Option<u64>,
    /// Extra linear memories (multi-memory).
    extra_memories: u32,
    /// A growable funcref table.
    table: bool,
    /// A start function that loops forever.
    start_loop: bool,
    /// Imports: (module, name, params, results); `run` calls each once.
    imports: Vec<(&'static str, &'static str, Vec<ValType>, Vec<ValType>)>,
    /// The body of `run` before it returns `Ok([outcome])`. It may branch
    /// to label 0 to return "contained" or fall through for "ESCAPED".
    body: Vec<I<'static>>,
    /// The `capstan-manifest` section (None: leave it out).
    manifest: Option<String>,
}

fn manifest(name: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"Attack (hand-made): see tests/attacks/handmade.rs\"\nworld = \"base\"\n\n[[params]]\nname = \"arg\"\ndefault = \"\"\n\n[[results]]\nname = \"outcome\"\n"
    )
}

fn mem(offset: u64) -> MemArg {
    MemArg {
        offset,
        align: 2,
        memory_index: 0,
    }
}

/// The core module. Function indices: imports first, then `run`,
/// `cabi_realloc`, and the start function.
fn task_module(spec: &Spec) -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32; 9], [ValType::I32]); // 0: run
    types.ty().function([ValType::I32; 4], [ValType::I32]); // 1: cabi_realloc
    types.ty().function([], []); // 2: start
    for (i, (_, _, p, r)) in spec.imports.iter().enumerate() {
        let _ = i;
        types.ty().function(p.clone(), r.clone());
    }
    m.section(&types);

    let mut imports = ImportSection::new();
    for (i, (module, name, _, _)) in spec.imports.iter().enumerate() {
        imports.import(module, name, EntityType::Function(3 + i as u32));
    }
    if !spec.imports.is_empty() {
        m.section(&imports);
    }
    let n_imports = spec.imports.len() as u32;
    let run_idx = n_imports;
    let realloc_idx = n_imports + 1;
    let start_idx = n_imports + 2;

    let mut funcs = FunctionSection::new();
    funcs.function(0);
    funcs.function(1);
    if spec.start_loop {
        funcs.function(2);
    }
    m.section(&funcs);

    if spec.table {
        let mut tables = TableSection::new();
        tables.table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: 1,
            maximum: None,
            shared: false,
        });
        m.section(&tables);
    }

    let mut mems = MemorySection::new();
    let pages = |minimum| MemoryType {
        minimum,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    };
    mems.memory(pages(spec.min_pages.unwrap_or(2)));
    for _ in 0..spec.extra_memories {
        mems.memory(pages(0));
    }
    m.section(&mems);

    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(4096),
    );
    m.section(&globals);

    let mut exports = ExportSection::new();
    exports.export(RUN, ExportKind::Func, run_idx);
    exports.export("cabi_realloc", ExportKind::Func, realloc_idx);
    exports.export("memory", ExportKind::Memory, 0);
    m.section(&exports);

    if spec.start_loop {
        m.section(&StartSection {
            function_index: start_idx,
        });
    }

    let mut code = CodeSection::new();
    // run
    let mut f = Function::new([]);
    for i in 0..n_imports {
        let (_, _, p, r) = &spec.imports[i as usize];
        for _ in p {
            f.instruction(&I::I32Const(64));
        }
        f.instruction(&I::Call(i));
        for _ in r {
            f.instruction(&I::Drop);
        }
    }
    f.instruction(&I::Block(BlockType::Empty));
    for ins in &spec.body {
        f.instruction(ins);
    }
    // Fell through: the attack worked. Ok([outcome = "ESCAPED"]).
    ret_record(&mut f, 528);
    f.instruction(&I::End);
    // Branched out: contained. Ok([outcome = "contained"]).
    ret_record(&mut f, 512);
    f.instruction(&I::End);
    code.function(&f);
    // cabi_realloc: a bump allocator (8-byte aligned) from global 0.
    let mut f = Function::new([(1, ValType::I32)]);
    for ins in [
        I::GlobalGet(0),
        I::I32Const(7),
        I::I32Add,
        I::I32Const(-8),
        I::I32And,
        I::LocalSet(4),
        I::LocalGet(4),
        I::LocalGet(3),
        I::I32Add,
        I::GlobalSet(0),
        I::LocalGet(4),
        I::End,
    ] {
        f.instruction(&ins);
    }
    code.function(&f);
    if spec.start_loop {
        let mut f = Function::new([]);
        for ins in [I::Loop(BlockType::Empty), I::Br(0), I::End, I::End] {
            f.instruction(&ins);
        }
        code.function(&f);
    }
    m.section(&code);

    // Strings and the two one-element result lists.
    let mut data = DataSection::new();
    data.active(0, &ConstExpr::i32_const(256), b"outcome".iter().copied());
    data.active(0, &ConstExpr::i32_const(272), CONTAINED.bytes());
    data.active(0, &ConstExpr::i32_const(320), ESCAPED.bytes());
    let rec = |value_ptr: u32, value_len: usize| -> Vec<u8> {
        [256u32, 7, value_ptr, value_len as u32]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    };
    data.active(0, &ConstExpr::i32_const(512), rec(272, CONTAINED.len()));
    data.active(0, &ConstExpr::i32_const(528), rec(320, ESCAPED.len()));
    m.section(&data);

    if let Some(text) = &spec.manifest {
        m.section(&CustomSection {
            name: Cow::Borrowed("capstan-manifest"),
            data: Cow::Borrowed(text.as_bytes()),
        });
    }
    m.finish()
}

const CONTAINED: &str = "denied 1/1\nthe host refused (contained)";
const ESCAPED: &str = "ESCAPED: the host let it through";

/// Return `Ok([record at rec])` through the return area at 16.
fn ret_record(f: &mut Function, rec: i32) {
    for ins in [
        I::I32Const(16),
        I::I32Const(0),
        I::I32Store(mem(0)),
        I::I32Const(16),
        I::I32Const(rec),
        I::I32Store(mem(4)),
        I::I32Const(16),
        I::I32Const(1),
        I::I32Store(mem(8)),
        I::I32Const(16),
        I::Return,
    ] {
        f.instruction(&ins);
    }
}

/// A component that instantiates `inner` `copies` times and exports the
/// first copy's task interface. `inner`'s leading type and import sections
/// (the `capstan:plugin/types` instance it imports) are copied as they are,
/// so the outer component imports the same and passes it on.
fn nest(inner: &[u8], copies: u32, manifest: &str) -> Result<Vec<u8>> {
    use wasm_encoder::{
        Alias, Component, ComponentAliasSection, ComponentExportKind, ComponentExportSection,
        ComponentInstanceSection, ComponentSectionId, RawSection,
    };
    use wasmparser::{Parser, Payload};
    let mut c = Component::new();
    let mut imports: Vec<String> = Vec::new();
    for payload in Parser::new(0).parse_all(inner) {
        match payload? {
            Payload::Version { .. } => {}
            Payload::ComponentTypeSection(r) => {
                c.section(&RawSection {
                    id: ComponentSectionId::Type.into(),
                    data: &inner[r.range()],
                });
            }
            Payload::ComponentImportSection(r) => {
                c.section(&RawSection {
                    id: ComponentSectionId::Import.into(),
                    data: &inner[r.range()],
                });
                for i in r {
                    imports.push(i?.name.name.to_string());
                }
            }
            _ => break,
        }
    }
    let n = imports.len() as u32;
    c.section(&RawSection {
        id: ComponentSectionId::Component.into(),
        data: inner,
    });
    let mut instances = ComponentInstanceSection::new();
    for _ in 0..copies {
        instances.instantiate(
            0,
            imports
                .iter()
                .enumerate()
                .map(|(i, name)| (name.as_str(), ComponentExportKind::Instance, i as u32)),
        );
    }
    c.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::InstanceExport {
        instance: n,
        kind: ComponentExportKind::Instance,
        name: "capstan:plugin/task@0.1.0",
    });
    c.section(&aliases);
    let mut exports = ComponentExportSection::new();
    exports.export(
        "capstan:plugin/task@0.1.0",
        ComponentExportKind::Instance,
        n + copies,
        None,
    );
    c.section(&exports);
    c.section(&CustomSection {
        name: Cow::Borrowed("capstan-manifest"),
        data: Cow::Borrowed(manifest.as_bytes()),
    });
    Ok(c.finish())
}

/// Wrap a core module into a component for `world` of `resolve`.
fn componentize(mut core: Vec<u8>, resolve: &Resolve, world: &str) -> Result<Vec<u8>> {
    let pkgs: Vec<_> = resolve.packages.iter().map(|(id, _)| id).collect();
    let world = resolve.select_world(&pkgs, Some(world))?;
    embed_component_metadata(&mut core, resolve, world, StringEncoding::UTF8)?;
    ComponentEncoder::default()
        .validate(true)
        .module(&core)?
        .encode()
}

fn contract(root: &Path) -> Result<Resolve> {
    let mut r = Resolve::default();
    r.push_dir(root.join("wit"))
        .context("reading wit/ for the hand-made components")?;
    Ok(r)
}

/// Every hand-made component: (name, bytes). `good` is a real built
/// component (for the truncated copy).
pub fn build(root: &Path, good: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let base = contract(root)?;
    let world = "capstan:plugin/base@0.1.0";
    let mut out = Vec::new();
    let mut task = |name: &str, spec: Spec| -> Result<()> {
        let spec = Spec {
            manifest: spec.manifest.or_else(|| Some(manifest(name))),
            ..spec
        };
        let bytes = componentize(task_module(&spec), &base, world)
            .with_context(|| format!("hand-made component {name}"))?;
        out.push((name.to_string(), bytes));
        Ok(())
    };

    // Grow the table 10,000 elements at a time until the host says no.
    task(
        "res-table-growth",
        Spec {
            table: true,
            body: vec![
                I::Loop(BlockType::Empty),
                I::RefNull(HeapType::Abstract {
                    shared: false,
                    ty: AbstractHeapType::Func,
                }),
                I::I32Const(10_000),
                I::TableGrow(0),
                I::I32Const(-1),
                I::I32Eq,
                I::BrIf(1),
                I::Br(0),
                I::End,
            ],
            ..Spec::default()
        },
    )?;

    // Eight extra memories, each grown to 60 MiB: under a per-memory cap of
    // 64 MiB each, 480 MiB in total.
    let mut body = Vec::new();
    for m in 1..=8u32 {
        body.extend([
            I::I32Const(960),
            I::MemoryGrow(m),
            I::I32Const(-1),
            I::I32Eq,
            I::BrIf(0),
        ]);
    }
    task(
        "res-multi-memory",
        Spec {
            extra_memories: 8,
            body,
            ..Spec::default()
        },
    )?;

    // A start function that never returns: the task never reaches `run`.
    task(
        "res-start-loop",
        Spec {
            start_loop: true,
            ..Spec::default()
        },
    )?;

    // 4 GiB of initial memory.
    task(
        "mal-huge-memory",
        Spec {
            min_pages: Some(65536),
            body: vec![I::Br(0)],
            ..Spec::default()
        },
    )?;

    // A broken manifest, and none at all.
    task(
        "mal-bad-manifest",
        Spec {
            manifest: Some("name = \"mal-bad-manifest\"\nworld = [[[\n".into()),
            body: vec![I::Br(0)],
            ..Spec::default()
        },
    )?;
    let no_manifest = Spec {
        manifest: None,
        body: vec![I::Br(0)],
        ..Spec::default()
    };
    out.push((
        "mal-no-manifest".into(),
        componentize(task_module(&no_manifest), &base, world)?,
    ));

    // Four instances of one component inside another, each instance with
    // its own 60 MiB memory from the start: under a 64 MiB cap per memory,
    // 240 MiB for the task.
    let inner = componentize(
        task_module(&Spec {
            min_pages: Some(960),
            body: vec![I::Br(0)],
            manifest: None,
            ..Spec::default()
        }),
        &base,
        world,
    )?;
    out.push((
        "res-multi-instance".into(),
        nest(&inner, 4, &manifest("res-multi-instance"))?,
    ));

    // A core module (what a wasm32-wasip1 build gives), not a component.
    out.push((
        "mal-core-module".into(),
        task_module(&Spec {
            manifest: Some(manifest("mal-core-module")),
            ..Spec::default()
        }),
    ));

    // The wrong world: a component whose only export is a bare function.
    let mut wrong = Resolve::default();
    wrong.push_str(
        "wrong.wit",
        "package evil:wrong@0.1.0;\nworld wrong { export run: func() -> u32; }\n",
    )?;
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut exports = ExportSection::new();
    exports.export("run", ExportKind::Func, 0);
    m.section(&exports);
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    f.instruction(&I::I32Const(7)).instruction(&I::End);
    code.function(&f);
    m.section(&code);
    m.section(&CustomSection {
        name: Cow::Borrowed("capstan-manifest"),
        data: Cow::Owned(manifest("mal-wrong-world").into_bytes()),
    });
    out.push((
        "mal-wrong-world".into(),
        componentize(m.finish(), &wrong, "evil:wrong/wrong@0.1.0")?,
    ));

    // The right interface name with the wrong types: run(string) -> string.
    let mut confused = Resolve::default();
    confused.push_str(
        "confused.wit",
        "package capstan:plugin@0.1.0;\ninterface task { run: func(input: string) -> string; }\nworld confused { export task; }\n",
    )?;
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32; 2], [ValType::I32]);
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    funcs.function(1);
    m.section(&funcs);
    let mut mems = MemorySection::new();
    mems.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    m.section(&mems);
    let mut exports = ExportSection::new();
    exports.export(RUN, ExportKind::Func, 0);
    exports.export("cabi_realloc", ExportKind::Func, 1);
    exports.export("memory", ExportKind::Memory, 0);
    m.section(&exports);
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    // Return the input string as is: (ptr, len) at the return area 16.
    for ins in [
        I::I32Const(16),
        I::LocalGet(0),
        I::I32Store(mem(0)),
        I::I32Const(16),
        I::LocalGet(1),
        I::I32Store(mem(4)),
        I::I32Const(16),
        I::End,
    ] {
        f.instruction(&ins);
    }
    code.function(&f);
    let mut f = Function::new([]);
    f.instruction(&I::I32Const(1024)).instruction(&I::End);
    code.function(&f);
    m.section(&code);
    m.section(&CustomSection {
        name: Cow::Borrowed("capstan-manifest"),
        data: Cow::Owned(manifest("mal-type-confusion").into_bytes()),
    });
    out.push((
        "mal-type-confusion".into(),
        componentize(m.finish(), &confused, "capstan:plugin/confused@0.1.0")?,
    ));

    // A newer WASI than the host links: wasi:cli/environment@0.3.0.
    let mut newer = contract(root)?;
    newer.push_str(
        "newer-cli.wit",
        "package wasi:cli@0.3.0;\ninterface environment { get-arguments: func() -> list<string>; }\n",
    )?;
    newer.push_str(
        "newer.wit",
        "package evil:newer@0.1.0;\nworld newer { import wasi:cli/environment@0.3.0; export capstan:plugin/task@0.1.0; }\n",
    )?;
    let spec = Spec {
        imports: vec![(
            "wasi:cli/environment@0.3.0",
            "get-arguments",
            vec![ValType::I32],
            vec![],
        )],
        body: vec![I::Br(0)],
        manifest: Some(manifest("mal-newer-wasi")),
        ..Spec::default()
    };
    out.push((
        "mal-newer-wasi".into(),
        componentize(task_module(&spec), &newer, "evil:newer/newer@0.1.0")?,
    ));

    // A real component cut in half.
    out.push(("mal-truncated".into(), good[..good.len() / 2].to_vec()));
    Ok(out)
}
