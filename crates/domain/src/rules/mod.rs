//! The rules, as plain functions over entities. No I/O here.

pub mod actions;
pub mod alerts;
pub mod audit;
pub mod device_actions;
pub mod device_groups;
pub mod device_report;
pub mod enrollment;
pub mod faults;
pub mod indicators;
pub mod ip_history;
pub mod live_response;
pub mod outcomes;
pub mod platform;
pub mod recorder;
pub mod tags;
