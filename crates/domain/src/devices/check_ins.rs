//! Check-ins are frequent and small: they are kept in memory and written in
//! one transaction per flush, the latest per device, so that the database
//! commits once a second whatever the size of the fleet.

use super::CheckInRecord;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct CheckInBuffer {
    latest: Mutex<HashMap<(String, String), CheckInRecord>>,
}

impl CheckInBuffer {
    /// Keeps `record`, replacing an older one of the same device.
    pub fn record(&self, record: CheckInRecord) {
        let key = (record.tenant_id.clone(), record.machine_id.clone());
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.insert(key, record);
    }

    /// Everything recorded since the last drain.
    pub fn drain(&self) -> Vec<CheckInRecord> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *latest).into_values().collect()
    }

    /// Puts back records whose write failed, unless a newer one arrived meanwhile.
    pub fn restore(&self, records: Vec<CheckInRecord>) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            latest
                .entry((record.tenant_id.clone(), record.machine_id.clone()))
                .or_insert(record);
        }
    }
}
