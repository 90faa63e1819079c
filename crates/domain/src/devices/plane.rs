//! The device plane's service: what the HTTP handlers of `/device/v1` call.

use super::check_ins::CheckInBuffer;
use super::indicators::{empty_version, DeviceIndicatorSets, FRESH_FOR};
use super::secrets::{self, PresentedSecret};
use super::{CheckInRecord, Device, DeviceActionChange, DeviceRefusal};
use crate::caller::Visibility;
use crate::files::FileKind;
use crate::rate_limit::{RateKey, RateLimiter, RateLimits, RateScope};
use crate::rules;
use crate::service::Palisade;
use crate::store::MachineKey;
use palisade_contract::{ErrorCode, MachineAction, MdeError};
use palisade_device::{
    ActionResult, Capability, CheckIn, CheckInReply, DeviceIndicators, EnrollRequest, Enrollment,
    CREDENTIAL_PREFIX, OFFBOARDED_MESSAGE, ONBOARDING_TOKEN_PREFIX,
};
use std::sync::Arc;
use std::time::Duration;

/// How often devices are asked to report when nothing happens.
pub const DEFAULT_CHECK_IN_INTERVAL_SECONDS: u64 = 60;

/// How long a delivered action is not delivered again: longer than a device
/// takes to start it, so that it is not taken on twice; a device that went
/// silent with it (or lost the reply) gets it again after this.
pub const DELIVERY_HOLD_SECONDS: i64 = 60;

#[derive(Clone)]
pub struct DevicePlane {
    pub(crate) palisade: Palisade,
    check_ins: Arc<CheckInBuffer>,
    check_in_interval_seconds: u64,
    /// Enrollments per onboarding token; `None`: not limited.
    enrollment_limiter: Option<RateLimiter>,
    /// Set when the server stops: long polls answer at once instead of holding shutdown up.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    indicators: Arc<DeviceIndicatorSets>,
    alert_limiter: RateLimiter,
}

/// Alerts one device may raise: the agent raises one per indicator in ten
/// minutes, and one per file it stops, so a sound agent stays well inside.
pub const DEVICE_ALERT_LIMITS: RateLimits = RateLimits {
    per_minute: 30,
    per_hour: 300,
};

fn unauthorized(message: &str) -> MdeError {
    MdeError::new(ErrorCode::Unauthorized, message)
}

const BAD_ONBOARDING_TOKEN: &str =
    "The onboarding token is not valid or was revoked; ask the tenant's administrator for a current one.";
const BAD_CREDENTIAL: &str = "The device credential is not valid.";

impl DevicePlane {
    pub fn new(palisade: Palisade, check_in_interval_seconds: u64) -> DevicePlane {
        DevicePlane {
            check_ins: Arc::default(),
            check_in_interval_seconds,
            enrollment_limiter: None,
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            indicators: Arc::default(),
            alert_limiter: RateLimiter::new(
                DEVICE_ALERT_LIMITS,
                palisade.clock().clone(),
                palisade.store().clone(),
            ),
            palisade,
        }
    }

    /// Ends every long poll now waiting, and every one to come, without waiting.
    pub fn stop_waiting(&self) {
        self.stopping.send_replace(true);
    }

    /// Counts enrollments per onboarding token against `limits`.
    pub fn with_enrollment_limits(mut self, limits: Option<RateLimits>) -> DevicePlane {
        self.enrollment_limiter = limits.map(|limits| {
            RateLimiter::new(
                limits,
                self.palisade.clock().clone(),
                self.palisade.store().clone(),
            )
        });
        self
    }

    /// Enrolls a device presenting an onboarding token: creates its machine
    /// and gives it a credential of its own, or, for a device presenting its
    /// current credential, updates its machine in place
    /// (`rules::enrollment::enroll` decides).
    pub async fn enroll(
        &self,
        onboarding_token: &str,
        request: EnrollRequest,
    ) -> Result<Enrollment, DeviceRefusal> {
        let presented = PresentedSecret::parse(onboarding_token, ONBOARDING_TOKEN_PREFIX)
            .ok_or_else(|| unauthorized(BAD_ONBOARDING_TOKEN))?;
        let store = self.palisade.store();
        let token = store
            .onboarding_token(&presented.tenant_id, &presented.id)
            .await?
            .filter(|t| t.revoked_at.is_none() && presented.matches(&t.secret_hash))
            .ok_or_else(|| unauthorized(BAD_ONBOARDING_TOKEN))?;
        // Counted once the token is proven: a forged secret cannot spend a
        // real token's allowance.
        if let Some(limiter) = &self.enrollment_limiter {
            let key = RateKey {
                tenant_id: token.tenant_id.clone(),
                principal_id: token.id.clone(),
                scope: RateScope::Enrollment,
            };
            limiter
                .admit(&key)
                .await
                .map_err(MdeError::from)?
                .map_err(DeviceRefusal::Throttled)?;
        }
        rules::enrollment::validate(&request)?;
        let presenting = self.presented_device(&token.tenant_id, &request).await?;
        let now = self.palisade.now_in(&token.tenant_id);
        let machine = rules::enrollment::new_machine(&request, now);
        let credential_id = uuid::Uuid::new_v4().simple().to_string();
        let (credential, credential_hash) =
            secrets::issue(CREDENTIAL_PREFIX, &token.tenant_id, &credential_id);
        let device = Device {
            tenant_id: token.tenant_id.clone(),
            machine_id: machine.id.clone(),
            credential_id,
            credential_hash,
            hardware_id: request.hardware_id.clone(),
            onboarding_token_id: token.id.clone(),
            capabilities: request.capabilities.clone(),
            enrolled_at: now,
            offboarded_at: None,
            isolation: Default::default(),
            isolation_at: now,
        };
        let presented_id = presenting.as_ref().map(|(id, _)| id.as_str());
        let (stored, stored_device) = store.enroll_device(&machine, &device, presented_id).await?;
        // In place, the device keeps the credential it presented.
        let credential = match presenting {
            Some((id, text)) if stored_device.credential_id == id => text,
            _ => credential,
        };
        Ok(Enrollment {
            tenant_id: token.tenant_id,
            machine_id: stored.id,
            credential,
            check_in_interval_seconds: self.check_in_interval_seconds,
        })
    }

    /// The credential id (and text) the enrolling device presented, if it is
    /// a current credential of the tenant's; an unknown or forged one counts
    /// as none. An offboarded device's is refused as at check-in: its agent
    /// learns that the offboard took effect instead of onboarding anew.
    async fn presented_device(
        &self,
        tenant_id: &str,
        request: &EnrollRequest,
    ) -> Result<Option<(String, String)>, MdeError> {
        let Some(text) = &request.credential else {
            return Ok(None);
        };
        let Some(presented) =
            PresentedSecret::parse(text, CREDENTIAL_PREFIX).filter(|p| p.tenant_id == tenant_id)
        else {
            return Ok(None);
        };
        let device = self
            .palisade
            .store()
            .device_by_credential(tenant_id, &presented.id)
            .await?;
        match device.filter(|d| presented.matches(&d.credential_hash)) {
            Some(d) if d.offboarded_at.is_some() => Err(unauthorized(OFFBOARDED_MESSAGE)),
            Some(_) => Ok(Some((presented.id, text.clone()))),
            None => Ok(None),
        }
    }

    /// The device a credential belongs to, unless it was offboarded.
    pub async fn authenticate(&self, credential: &str) -> Result<Device, MdeError> {
        let presented = PresentedSecret::parse(credential, CREDENTIAL_PREFIX)
            .ok_or_else(|| unauthorized(BAD_CREDENTIAL))?;
        let device = self
            .palisade
            .store()
            .device_by_credential(&presented.tenant_id, &presented.id)
            .await?
            .filter(|d| presented.matches(&d.credential_hash))
            .ok_or_else(|| unauthorized(BAD_CREDENTIAL))?;
        if device.offboarded_at.is_some() {
            return Err(unauthorized(OFFBOARDED_MESSAGE));
        }
        Ok(device)
    }

    /// The indicators the device enforces, if it enforces any and does not
    /// hold their version. `group` is the device group of its machine, read
    /// from the store the first time a check-in needs it (only when some
    /// indicator is scoped to device groups).
    async fn indicators_for(
        &self,
        device: &Device,
        held: Option<&str>,
        group: &mut Option<Option<String>>,
    ) -> Result<Option<DeviceIndicators>, MdeError> {
        // A device that holds a version enforces them too, whatever it
        // declared when it enrolled (agents enrolled before the capability).
        if !device.capabilities.contains(&Capability::Indicators) && held.is_none() {
            return Ok(None);
        }
        let tenant = self
            .indicators
            .of(&self.palisade, &device.tenant_id)
            .await?;
        if tenant.depends_on_group() && group.is_none() {
            *group = Some(self.device_group(device).await?);
        }
        let set = tenant.for_group(group.as_ref().and_then(Option::as_deref));
        let held = held.unwrap_or(empty_version());
        Ok((held != set.version).then(|| (*set).clone()))
    }

    /// The device group (`rbacGroupName`) of the device's machine.
    async fn device_group(&self, device: &Device) -> Result<Option<String>, MdeError> {
        let visibility = Visibility::whole_tenant(&device.tenant_id);
        let machine = self
            .palisade
            .store()
            .machine(&visibility, MachineKey::Id(&device.machine_id))
            .await?;
        Ok(machine.and_then(|m| m.rbac_group_name()))
    }

    /// Records a check-in (written with the next flush) and answers the
    /// device's open actions and, if they changed, its tenant's indicators;
    /// with neither, waits up to `wait` for one or the other.
    pub async fn check_in(
        &self,
        device: &Device,
        report: CheckIn,
        wait: Duration,
    ) -> Result<CheckInReply, MdeError> {
        rules::device_report::validate(&report)?;
        let held = report.indicators_version.clone();
        self.check_ins.record(CheckInRecord {
            tenant_id: device.tenant_id.clone(),
            machine_id: device.machine_id.clone(),
            at: self.palisade.now_in(&device.tenant_id),
            report,
        });
        // Subscribed before reading, so that an action created between the
        // read and the wait still wakes this poll.
        let wakeup = self
            .palisade
            .wakeups()
            .subscribe(&device.tenant_id, &device.machine_id);
        let notified = wakeup.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut actions = self.claim_actions(device).await?;
        let mut group = None;
        let mut indicators = self
            .indicators_for(device, held.as_deref(), &mut group)
            .await?;
        let mut stopping = self.stopping.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        // Waits for an action, looking at the indicators between whiles
        // (they change on any node; the set is read at most every FRESH_FOR).
        while actions.is_empty()
            && indicators.is_none()
            && tokio::time::Instant::now() < deadline
            && !*stopping.borrow_and_update()
        {
            let look_again = (tokio::time::Instant::now() + FRESH_FOR).min(deadline);
            let woken = tokio::select! {
                () = notified.as_mut() => true,
                () = tokio::time::sleep_until(look_again) => false,
                _ = stopping.changed() => break,
            };
            if woken {
                actions = self.claim_actions(device).await?;
                break;
            }
            indicators = self
                .indicators_for(device, held.as_deref(), &mut group)
                .await?;
        }
        Ok(CheckInReply {
            actions,
            check_in_interval_seconds: self.check_in_interval_seconds,
            indicators,
        })
    }

    async fn claim_actions(&self, device: &Device) -> Result<Vec<MachineAction>, MdeError> {
        let now = self.palisade.now_in(&device.tenant_id);
        let held_until = now.plus_seconds(DELIVERY_HOLD_SECONDS);
        Ok(self
            .palisade
            .store()
            .claim_device_actions(&device.tenant_id, &device.machine_id, now, held_until)
            .await?)
    }

    /// Raises an alert on the device's own machine (a detection of its agent:
    /// an indicator hit, a blocked file), at most [`DEVICE_ALERT_LIMITS`].
    pub async fn raise_alert(
        &self,
        device: &Device,
        alert: serde_json::Value,
    ) -> Result<palisade_contract::Alert, DeviceRefusal> {
        let partial = rules::alerts::Partial::read_detection(alert, &device.machine_id)?;
        let key = RateKey {
            tenant_id: device.tenant_id.clone(),
            principal_id: device.machine_id.clone(),
            scope: RateScope::DeviceAlerts,
        };
        self.alert_limiter
            .admit(&key)
            .await
            .map_err(MdeError::from)?
            .map_err(DeviceRefusal::Throttled)?;
        Ok(self
            .palisade
            .raise_partial_alert(&device.tenant_id, partial)
            .await?)
    }

    /// Pending → InProgress: the device has taken the action on.
    pub async fn start_action(
        &self,
        device: &Device,
        action_id: &str,
    ) -> Result<MachineAction, MdeError> {
        let now = self.palisade.now_in(&device.tenant_id);
        let decide = Box::new(move |action: &MachineAction, _: &_, _: &_| {
            Ok(DeviceActionChange {
                action: rules::device_actions::start(action, now)?,
                machine: None,
                device: None,
            })
        });
        Ok(self
            .palisade
            .store()
            .change_device_action(device, action_id, decide)
            .await?)
    }

    /// InProgress → Succeeded | Failed, with what that changes on the machine.
    pub async fn finish_action(
        &self,
        device: &Device,
        action_id: &str,
        result: ActionResult,
    ) -> Result<MachineAction, MdeError> {
        self.check_file_uploaded(device, action_id, &result).await?;
        let now = self.palisade.now_in(&device.tenant_id);
        let decide = Box::new(move |action: &MachineAction, machine: &_, device: &_| {
            rules::device_actions::finish(action, machine, device, &result, now)
        });
        Ok(self
            .palisade
            .store()
            .change_device_action(device, action_id, decide)
            .await?)
    }

    /// A collection succeeds only once the server holds its package; a
    /// live-response command is Completed only once it holds its result.
    async fn check_file_uploaded(
        &self,
        device: &Device,
        action_id: &str,
        result: &ActionResult,
    ) -> Result<(), MdeError> {
        let visibility = Visibility::whole_tenant(&device.tenant_id);
        let action = self.palisade.store().action(&visibility, action_id).await?;
        let Some(action) = action.filter(|a| a.machine_id == device.machine_id) else {
            return Ok(());
        };
        if action.action_type == palisade_contract::ActionType::LiveResponse {
            for outcome in &result.commands {
                let index = i64::from(outcome.index);
                let completed = outcome.command_status
                    == palisade_contract::live_response::CommandStatus::Completed;
                if completed
                    && rules::live_response::has_result(&action, index)
                    && !self
                        .palisade
                        .has_file(
                            &device.tenant_id,
                            action_id,
                            (FileKind::LiveResponseResult, index),
                        )
                        .await?
                {
                    return Err(MdeError::new(
                        ErrorCode::BadRequest,
                        format!(
                            "Command {index} of action {action_id} cannot be Completed before its result is uploaded ({}).",
                            palisade_device::command_result_path(action_id, outcome.index)
                        ),
                    ));
                }
            }
        }
        if result.status == palisade_contract::ActionStatus::Succeeded
            && action.action_type == palisade_contract::ActionType::CollectInvestigationPackage
            && !self
                .palisade
                .has_file(
                    &device.tenant_id,
                    action_id,
                    (FileKind::InvestigationPackage, 0),
                )
                .await?
        {
            return Err(MdeError::new(
                ErrorCode::BadRequest,
                format!(
                    "Action {action_id} cannot succeed before its investigation package is uploaded ({}).",
                    palisade_device::package_path(action_id)
                ),
            ));
        }
        Ok(())
    }

    /// Writes the check-ins recorded since the last flush; returns how many.
    /// On failure they are kept for the next flush.
    pub async fn flush_check_ins(&self) -> Result<usize, MdeError> {
        let records = self.check_ins.drain();
        if records.is_empty() {
            return Ok(0);
        }
        match self.palisade.store().record_check_ins(&records).await {
            Ok(()) => Ok(records.len()),
            Err(error) => {
                self.check_ins.restore(records);
                Err(error.into())
            }
        }
    }
}
