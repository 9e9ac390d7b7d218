//! The hub: receives alerts, finds the grid cell they happened in and the person on duty there,
//! and escalates what nobody handles. So far: the grid core (`grid`); the broker, ingest,
//! roster, escalation and dashboard arrive with their own issues.

pub mod grid;
