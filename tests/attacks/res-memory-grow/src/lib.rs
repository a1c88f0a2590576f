//! Attack: `memory.grow` straight from the guest in 64 MiB steps up to
//! the 4 GiB the 32-bit address space allows, bypassing the allocator.
use attack_kit::outcome;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

#[cfg(target_arch = "wasm32")]
fn grow(pages: usize) -> usize {
    core::arch::wasm32::memory_grow(0, pages)
}

/// Native builds (`cargo test --workspace` compiles every crate for the
/// host too) have no linear memory to grow.
#[cfg(not(target_arch = "wasm32"))]
fn grow(_pages: usize) -> usize {
    usize::MAX
}

fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut grown = 0usize;
    for _ in 0..64 {
        // 1024 pages = 64 MiB.
        if grow(1024) == usize::MAX {
            return outcome(format!(
                "denied: memory.grow refused after {} MiB",
                grown * 64
            ));
        }
        grown += 1;
    }
    outcome(format!("ESCAPED: grew {} MiB", grown * 64))
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
