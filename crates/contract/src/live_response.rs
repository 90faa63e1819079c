//! Live response as MDE has it on the wire: the commands of a `LiveResponse`
//! action (`runliveresponse`), their state in the action's `commands`, the
//! transcript a RunScript leaves, and the library's files.

use crate::machine::wire_enum;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

wire_enum!(
    /// What one live-response command does; a session's commands come in
    /// this order (any number of each).
    CommandType {
        /// Places a library file (`FileName`) in the device's working folder.
        PutFile,
        /// Runs a library script (`ScriptName`, optional `Args`).
        RunScript,
        /// Collects a file from the device (`Path`).
        GetFile,
    }
);

wire_enum!(CommandStatus {
    Created,
    Completed,
    Failed
});

impl CommandType {
    /// The parameter keys the command takes: the required one first.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            CommandType::PutFile => &["FileName"],
            CommandType::RunScript => &["ScriptName", "Args"],
            CommandType::GetFile => &["Path"],
        }
    }

    /// Whether the command leaves a result to download
    /// (`GetLiveResponseResultDownloadLink`): a transcript, a file.
    pub fn has_result(self) -> bool {
        !matches!(self, CommandType::PutFile)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommandParam {
    pub key: String,
    pub value: String,
}

/// One command as a session asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Command {
    #[serde(rename = "type")]
    pub command_type: CommandType,
    pub params: Vec<CommandParam>,
}

impl Command {
    /// The value of parameter `key`, if given.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    /// The library file the command needs on the device: PutFile's file,
    /// RunScript's script.
    pub fn library_file(&self) -> Option<&str> {
        match self.command_type {
            CommandType::PutFile => self.param("FileName"),
            CommandType::RunScript => self.param("ScriptName"),
            CommandType::GetFile => None,
        }
    }
}

/// One element of a live-response action's `commands`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionCommand {
    pub index: u32,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub command_status: CommandStatus,
    pub errors: Vec<String>,
    pub command: Command,
}

/// What a RunScript command's result link downloads (MDE's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScriptTranscript {
    pub script_name: String,
    pub exit_code: i32,
    pub script_output: String,
    pub script_errors: String,
}

/// A file of the live-response library (`GET /api/libraryfiles`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LibraryFile {
    pub file_name: String,
    pub sha256: String,
    pub description: Option<String>,
    pub creation_time: Timestamp,
    pub last_updated_time: Timestamp,
    pub created_by: String,
    pub has_parameters: bool,
    pub parameters_description: Option<String>,
}

/// The largest file the library takes (MDE's limit).
pub const MAX_LIBRARY_FILE_BYTES: u64 = 20 * 1024 * 1024;

/// Whether `name` may name a library file: a plain file name (it becomes
/// one on the device), at most 255 bytes, no path or control characters.
pub fn is_library_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_and_print_as_mde_shows_them() {
        let json = r#"{"index":0,"startTime":null,"endTime":null,"commandStatus":"Created","errors":[],
            "command":{"type":"RunScript","params":[{"key":"ScriptName","value":"minidump.ps1"},{"key":"Args","value":"OfficeClickToRun"}]}}"#;
        let command: ActionCommand = serde_json::from_str(json).unwrap();
        assert_eq!(command.command.param("Args"), Some("OfficeClickToRun"));
        assert_eq!(command.command.library_file(), Some("minidump.ps1"));
        let back = serde_json::to_value(&command).unwrap();
        assert_eq!(back["commandStatus"], "Created");
        assert_eq!(back["command"]["type"], "RunScript");
    }

    #[test]
    fn library_file_names_are_plain_names() {
        assert!(is_library_file_name("collect.sh"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(!is_library_file_name(bad), "{bad:?}");
        }
    }
}
