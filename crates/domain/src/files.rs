//! Files devices upload for their actions (investigation packages,
//! live-response results) and the live-response library's, kept in the
//! store in chunks so that every node serves them and neither an upload nor
//! a download holds a whole file; and the short-lived links that let a
//! client download one without a bearer token.

use crate::caller::{Caller, Visibility};
use crate::devices::Device;
use crate::ids::hex;
use crate::service::Palisade;
use palisade_contract::{ActionStatus, ActionType, ErrorCode, MachineAction, MdeError, Timestamp};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a file is to its action.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::Display,
)]
pub enum FileKind {
    InvestigationPackage,
    /// What a live-response command left: a script's transcript, a file.
    LiveResponseResult,
    /// A file of the live-response library.
    LibraryFile,
}

/// A file as stored: complete once `completed_at` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub tenant_id: String,
    pub id: String,
    /// What the file belongs to: its action, or a library file's name.
    pub action_id: String,
    pub kind: FileKind,
    /// Its part of that: a live-response result's command index, else 0.
    pub part: i64,
    pub size: i64,
    pub sha256: Option<String>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// The bytes a stored chunk holds: what an upload writes at a time.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// The largest package a device may upload, unless configured otherwise.
pub const DEFAULT_MAX_PACKAGE_BYTES: u64 = 512 * 1024 * 1024;
/// How long a package link downloads.
pub const PACKAGE_LINK_SECONDS: i64 = 15 * 60;
/// How long a live-response result link downloads (MDE's 30 minutes).
pub const RESULT_LINK_SECONDS: i64 = 30 * 60;
/// How long files are kept after their upload began.
pub const FILE_RETENTION_DAYS: u32 = 7;

/// A file being uploaded: chunks written as they fill, the digest kept as
/// they pass.
pub struct Upload {
    file: StoredFile,
    max_bytes: u64,
    buffer: Vec<u8>,
    next_seq: i64,
    size: u64,
    digest: Sha256,
}

/// The refusal of a file past the upload limit (413).
pub fn too_large(max_bytes: u64) -> MdeError {
    MdeError::new(
        ErrorCode::BadRequest,
        format!("The file is larger than the {max_bytes} bytes taken here."),
    )
    .with_status(413)
}

impl Palisade {
    /// Starts the upload of `kind` (`part` of it) for the device's action
    /// `action_id`, which must be the device's own, of the type that makes
    /// such a file, and InProgress; `declared_bytes` is the length the
    /// upload says it has.
    pub async fn begin_upload(
        &self,
        device: &Device,
        action_id: &str,
        (kind, part): (FileKind, i64),
        max_bytes: u64,
        declared_bytes: Option<u64>,
    ) -> Result<Upload, MdeError> {
        let action = self.device_action(device, action_id).await?;
        let takes = match kind {
            FileKind::InvestigationPackage => {
                action.action_type == ActionType::CollectInvestigationPackage && part == 0
            }
            FileKind::LiveResponseResult => {
                action.action_type == ActionType::LiveResponse
                    && crate::rules::live_response::has_result(&action, part)
            }
            FileKind::LibraryFile => false,
        };
        if !takes || action.status != ActionStatus::InProgress {
            return Err(MdeError::new(
                ErrorCode::BadRequest,
                format!(
                    "Action {action_id} is a {} that is {}: it takes no {kind} {part}.",
                    action.action_type, action.status
                ),
            ));
        }
        // Refused before its bytes come when its length says so.
        if declared_bytes.is_some_and(|size| size > max_bytes) {
            return Err(too_large(max_bytes));
        }
        self.new_upload(&device.tenant_id, &action.id, (kind, part), max_bytes)
            .await
    }

    /// The device's own action `action_id` (404 for another machine's).
    pub(crate) async fn device_action(
        &self,
        device: &Device,
        action_id: &str,
    ) -> Result<MachineAction, MdeError> {
        let visibility = Visibility::whole_tenant(&device.tenant_id);
        self.store()
            .action(&visibility, action_id)
            .await?
            .filter(|a| a.machine_id == device.machine_id)
            .ok_or_else(|| MdeError::action_not_found(action_id))
    }

    /// A new upload of `kind` (`part` of it) for `owner`, what it belongs to.
    pub(crate) async fn new_upload(
        &self,
        tenant_id: &str,
        owner: &str,
        (kind, part): (FileKind, i64),
        max_bytes: u64,
    ) -> Result<Upload, MdeError> {
        let file = StoredFile {
            tenant_id: tenant_id.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            action_id: owner.to_string(),
            kind,
            part,
            size: 0,
            sha256: None,
            // The server's time, not the tenant's: retention is the
            // server's, whatever an emulated clock says.
            created_at: self.now(),
            completed_at: None,
        };
        self.store().create_file(&file).await?;
        Ok(Upload {
            file,
            max_bytes,
            buffer: Vec::with_capacity(CHUNK_BYTES),
            next_seq: 0,
            size: 0,
            digest: Sha256::new(),
        })
    }

    /// Takes the next bytes of `upload`, writing each chunk that fills;
    /// refuses past the upload's limit (the caller then abandons it).
    pub async fn upload_bytes(
        &self,
        upload: &mut Upload,
        mut bytes: &[u8],
    ) -> Result<(), MdeError> {
        upload.size += bytes.len() as u64;
        if upload.size > upload.max_bytes {
            return Err(too_large(upload.max_bytes));
        }
        upload.digest.update(bytes);
        while !bytes.is_empty() {
            let room = CHUNK_BYTES - upload.buffer.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            upload.buffer.extend_from_slice(now);
            bytes = later;
            if upload.buffer.len() == CHUNK_BYTES {
                self.write_chunk(upload).await?;
            }
        }
        Ok(())
    }

    async fn write_chunk(&self, upload: &mut Upload) -> Result<(), MdeError> {
        let data = std::mem::replace(&mut upload.buffer, Vec::with_capacity(CHUNK_BYTES));
        let file = &upload.file;
        self.store()
            .append_file_chunk(&file.tenant_id, &file.id, upload.next_seq, data)
            .await?;
        upload.next_seq += 1;
        Ok(())
    }

    /// Writes the last chunk and marks the file complete: from now on its
    /// action's file.
    pub async fn finish_upload(&self, upload: Upload) -> Result<StoredFile, MdeError> {
        let file = self.last_chunk(upload).await?;
        self.store().complete_file(&file).await?;
        Ok(file)
    }

    /// Writes the upload's last chunk: the file as it is once complete.
    pub(crate) async fn last_chunk(&self, mut upload: Upload) -> Result<StoredFile, MdeError> {
        if !upload.buffer.is_empty() || upload.next_seq == 0 {
            self.write_chunk(&mut upload).await?;
        }
        let mut file = upload.file;
        file.sha256 = Some(hex(&upload.digest.finalize_reset()));
        file.size = i64::try_from(upload.size).unwrap_or(i64::MAX);
        file.completed_at = Some(self.now());
        Ok(file)
    }

    /// Forgets an upload given up (refused, or its connection lost).
    pub async fn abandon_upload(&self, upload: Upload) -> Result<(), MdeError> {
        let file = &upload.file;
        Ok(self.store().delete_file(&file.tenant_id, &file.id).await?)
    }

    /// Whether the action has its complete file of `kind` (`part` of it).
    pub async fn has_file(
        &self,
        tenant_id: &str,
        action_id: &str,
        kind: (FileKind, i64),
    ) -> Result<bool, MdeError> {
        Ok(self
            .store()
            .action_file(tenant_id, action_id, kind)
            .await?
            .is_some())
    }

    /// `GetPackageUri`: a link that downloads the action's investigation
    /// package, without a bearer token, for [`PACKAGE_LINK_SECONDS`]: its
    /// token and when it expires.
    pub async fn package_link(
        &self,
        caller: &Caller,
        action_id: &str,
    ) -> Result<(String, Timestamp), MdeError> {
        let action = self.get_action(caller, action_id).await?;
        let kind = (FileKind::InvestigationPackage, 0);
        // As MDE: a package only once its collection has succeeded.
        let collected = action.action_type == ActionType::CollectInvestigationPackage
            && action.status == ActionStatus::Succeeded;
        let file = match collected {
            true => {
                let simulate = || palisade_device::simulated_package(&action.machine_id);
                self.held_or_simulated(caller, &action, kind, simulate)
                    .await?
            }
            false => None,
        };
        let file = file.ok_or_else(|| {
            MdeError::new(
                ErrorCode::NotFound,
                format!("The investigation package of action {action_id} was not found."),
            )
        })?;
        self.link_to(&file, PACKAGE_LINK_SECONDS).await
    }

    /// The action's file of `kind`; or, for an action the emulator carried
    /// out (devices upload before they may report success: a recent action
    /// of a machine without a device), one it makes now with `simulate`.
    pub(crate) async fn held_or_simulated(
        &self,
        caller: &Caller,
        action: &MachineAction,
        kind: (FileKind, i64),
        simulate: impl FnOnce() -> Vec<u8>,
    ) -> Result<Option<StoredFile>, MdeError> {
        let tenant_id = &caller.tenant.id;
        let held = self
            .store()
            .action_file(tenant_id, &action.id, kind)
            .await?;
        if held.is_some() {
            return Ok(held);
        }
        let recent =
            action.creation_date_time_utc > self.now_in(tenant_id).minus_days(FILE_RETENTION_DAYS);
        let machine = self.machine_entity(caller, &action.machine_id).await;
        let emulated = machine.is_ok_and(|m| !crate::rules::enrollment::is_device_machine(&m));
        if !(recent && emulated) {
            return Ok(None);
        }
        let bytes = simulate();
        Ok(Some(
            self.store_file(tenant_id, &action.id, kind, &bytes).await?,
        ))
    }

    /// A new link that downloads `file` for `seconds`: its token and when
    /// it expires (on the tenant's clock).
    pub(crate) async fn link_to(
        &self,
        file: &StoredFile,
        seconds: i64,
    ) -> Result<(String, Timestamp), MdeError> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = hex(&secret);
        let expires_at = self.now_in(&file.tenant_id).plus_seconds(seconds);
        self.store()
            .create_file_link(&token_hash(&token), &file.tenant_id, &file.id, expires_at)
            .await?;
        Ok((token, expires_at))
    }

    /// A whole file made here (a simulated result), stored for `owner`.
    pub(crate) async fn store_file(
        &self,
        tenant_id: &str,
        owner: &str,
        kind: (FileKind, i64),
        bytes: &[u8],
    ) -> Result<StoredFile, MdeError> {
        let mut upload = self
            .new_upload(tenant_id, owner, kind, bytes.len() as u64)
            .await?;
        self.upload_bytes(&mut upload, bytes).await?;
        self.finish_upload(upload).await
    }

    /// The file a download link reads, while the link holds.
    pub async fn linked_file(&self, token: &str) -> Result<Option<StoredFile>, MdeError> {
        let Some((file, expires_at)) = self.store().linked_file(&token_hash(token)).await? else {
            return Ok(None);
        };
        // The tenant's clock: an emulator's clock control expires links too.
        Ok((expires_at > self.now_in(&file.tenant_id)).then_some(file))
    }

    /// Forgets files whose upload began more than [`FILE_RETENTION_DAYS`]
    /// ago, and expired links; how many files.
    pub async fn forget_old_files(&self) -> Result<u64, MdeError> {
        let now = self.now();
        Ok(self
            .store()
            .forget_files(now.minus_days(FILE_RETENTION_DAYS), now)
            .await?)
    }
}

/// Links are stored by the SHA-256 of their token: the store never holds one
/// that works.
fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}
