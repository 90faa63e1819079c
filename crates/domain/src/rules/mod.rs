//! The rules, as plain functions over entities. No I/O here.

pub mod actions;
pub mod device_groups;
pub mod platform;
pub mod tags;
