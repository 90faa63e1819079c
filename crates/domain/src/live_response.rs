//! Live response: the tenant's library of scripts and files (upload, list,
//! delete), what a session needs of it, and the links to its commands'
//! results. The session itself is a `LiveResponse` machine action
//! (`rules::live_response` has its rules); its devices fetch library files
//! and upload results through the device plane.

use crate::caller::Caller;
use crate::devices::Device;
use crate::files::{FileKind, StoredFile, Upload, RESULT_LINK_SECONDS};
use crate::rules::live_response as rules;
use crate::service::Palisade;
use palisade_contract::live_response::{
    is_library_file_name, Command, LibraryFile, MAX_LIBRARY_FILE_BYTES,
};
use palisade_contract::{ActionStatus, ErrorCode, MdeError, Timestamp};

/// A library file as stored: its entry, and the file with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryEntry {
    pub tenant_id: String,
    pub file_name: String,
    pub file_id: String,
    pub sha256: String,
    pub description: Option<String>,
    pub parameters_description: Option<String>,
    pub has_parameters: bool,
    pub created_by: String,
    pub creation_time: Timestamp,
    pub last_updated_time: Timestamp,
}

impl LibraryEntry {
    pub fn wire(&self) -> LibraryFile {
        LibraryFile {
            file_name: self.file_name.clone(),
            sha256: self.sha256.clone(),
            description: self.description.clone(),
            creation_time: self.creation_time,
            last_updated_time: self.last_updated_time,
            created_by: self.created_by.clone(),
            has_parameters: self.has_parameters,
            parameters_description: self.parameters_description.clone(),
        }
    }
}

/// The form fields of a library upload besides the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryUpload {
    pub description: Option<String>,
    pub parameters_description: Option<String>,
    pub has_parameters: Option<bool>,
    pub override_if_exists: bool,
}

fn library_file_missing(name: &str) -> MdeError {
    MdeError::new(
        ErrorCode::NotFound,
        format!("File {name} was not found in the live response library."),
    )
}

fn name_taken(name: &str) -> MdeError {
    MdeError::new(
        ErrorCode::BadRequest,
        format!("A file named {name} is in the library already; upload it with OverrideIfExists=true to replace it."),
    )
}

impl Palisade {
    pub async fn library_files(&self, caller: &Caller) -> Result<Vec<LibraryFile>, MdeError> {
        let entries = self.store().library_files(&caller.tenant.id).await?;
        Ok(entries.iter().map(LibraryEntry::wire).collect())
    }

    /// Starts the upload of library file `file_name`; refused at once if
    /// the name is not a plain file name. (Whether a name taken may be
    /// replaced is known once the whole form has come.)
    pub async fn begin_library_upload(
        &self,
        caller: &Caller,
        file_name: &str,
    ) -> Result<Upload, MdeError> {
        if !is_library_file_name(file_name) {
            return Err(MdeError::invalid_input(format!(
                "Invalid input file name {file_name:?}: a plain file name of at most 255 bytes."
            )));
        }
        self.new_upload(
            &caller.tenant.id,
            file_name,
            (FileKind::LibraryFile, 0),
            MAX_LIBRARY_FILE_BYTES,
        )
        .await
    }

    /// Completes a library upload: the file is the library's under its
    /// name from now on (in place of the one it replaces).
    pub async fn finish_library_upload(
        &self,
        caller: &Caller,
        upload: Upload,
        form: LibraryUpload,
    ) -> Result<LibraryFile, MdeError> {
        let file = self.last_chunk(upload).await?;
        let now = self.now_in(&caller.tenant.id);
        let earlier = self
            .store()
            .library_file(&file.tenant_id, &file.action_id)
            .await?;
        let entry = LibraryEntry {
            tenant_id: file.tenant_id.clone(),
            file_name: file.action_id.clone(),
            file_id: file.id.clone(),
            sha256: file.sha256.clone().unwrap_or_default(),
            has_parameters: form
                .has_parameters
                .unwrap_or(form.parameters_description.is_some()),
            description: form.description,
            parameters_description: form.parameters_description,
            // A replaced file keeps who made it first, and when.
            created_by: earlier
                .as_ref()
                .map_or_else(|| caller.requestor().to_string(), |e| e.created_by.clone()),
            creation_time: earlier.as_ref().map_or(now, |e| e.creation_time),
            last_updated_time: now,
        };
        let replace = form.override_if_exists;
        if !self
            .store()
            .put_library_file(&entry, &file, replace)
            .await?
        {
            self.store().delete_file(&file.tenant_id, &file.id).await?;
            return Err(name_taken(&entry.file_name));
        }
        Ok(entry.wire())
    }

    pub async fn delete_library_file(
        &self,
        caller: &Caller,
        file_name: &str,
    ) -> Result<(), MdeError> {
        match self
            .store()
            .delete_library_file(&caller.tenant.id, file_name)
            .await?
        {
            true => Ok(()),
            false => Err(library_file_missing(file_name)),
        }
    }

    /// Refuses a session that names a library file the library lacks.
    pub(crate) async fn check_library_has(
        &self,
        caller: &Caller,
        commands: &[Command],
    ) -> Result<(), MdeError> {
        for name in commands.iter().filter_map(Command::library_file) {
            if self
                .store()
                .library_file(&caller.tenant.id, name)
                .await?
                .is_none()
            {
                return Err(MdeError::invalid_input(format!(
                    "Invalid input: {name} is not in the live response library; upload it to /api/libraryfiles first."
                )));
            }
        }
        Ok(())
    }

    /// The library file `file_name` for the device's InProgress session
    /// `action_id`, which must name it (in a PutFile or a RunScript).
    pub async fn session_library_file(
        &self,
        device: &Device,
        action_id: &str,
        file_name: &str,
    ) -> Result<StoredFile, MdeError> {
        let action = self.device_action(device, action_id).await?;
        let named = action
            .commands
            .iter()
            .any(|c| c.command.library_file() == Some(file_name));
        if action.status != ActionStatus::InProgress || !named {
            return Err(MdeError::new(
                ErrorCode::BadRequest,
                format!(
                    "Action {action_id} is no InProgress session that puts or runs {file_name}."
                ),
            ));
        }
        let tenant_id = &device.tenant_id;
        let file = match self.store().library_file(tenant_id, file_name).await? {
            Some(entry) => {
                let kind = (FileKind::LibraryFile, 0);
                self.store()
                    .action_file(tenant_id, &entry.file_name, kind)
                    .await?
                    .filter(|f| f.id == entry.file_id)
            }
            None => None,
        };
        file.ok_or_else(|| library_file_missing(file_name))
    }

    /// `GetLiveResponseResultDownloadLink(index=n)`: a link that downloads
    /// what command `index` of the session left, for
    /// [`RESULT_LINK_SECONDS`]; asked again, a new link.
    pub async fn live_response_result_link(
        &self,
        caller: &Caller,
        action_id: &str,
        index: i64,
    ) -> Result<(String, Timestamp), MdeError> {
        let action = self.get_action(caller, action_id).await?;
        let command = rules::result_command(&action, index)?;
        let kind = (FileKind::LiveResponseResult, index);
        let simulate =
            || palisade_device::simulated_command_result(&command.command, &action.machine_id);
        let file = self
            .held_or_simulated(caller, &action, kind, simulate)
            .await?;
        let file = file.ok_or_else(|| {
            MdeError::new(
                ErrorCode::NotFound,
                format!("The result of command {index} of action {action_id} was not found."),
            )
        })?;
        self.link_to(&file, RESULT_LINK_SECONDS).await
    }
}
