//! Generated `Host` impl for `capstan:plugin/files`: delegates to
//! [`FilesState`]'s calls.

use super::FilesState;
use crate::bindings::capstan::plugin::files::{FileInfo, FileStat, Host, NewFile};
use crate::bindings::capstan::plugin::types::TaskError;
use crate::caps::capability::View;

impl Host for View<'_, FilesState> {
    async fn write_files(&mut self, dir: String, files: Vec<NewFile>) -> Result<(), TaskError> {
        self.state.write_new_files(dir, files).await
    }

    fn scan(&mut self, dir: String) -> Result<Vec<FileInfo>, TaskError> {
        self.state.scan(dir)
    }

    fn stat(
        &mut self,
        dir: String,
        paths: Vec<String>,
    ) -> Result<Vec<Option<FileStat>>, TaskError> {
        self.state.stat(dir, paths)
    }

    fn pack(&mut self, dir: String, paths: Vec<String>) -> Result<Vec<u8>, TaskError> {
        self.state.pack(dir, paths)
    }

    fn is_executable(&mut self, path: String) -> Result<bool, TaskError> {
        self.state.is_executable(path)
    }

    fn set_executable(&mut self, path: String, executable: bool) -> Result<(), TaskError> {
        self.state.set_executable(path, executable)
    }
}
