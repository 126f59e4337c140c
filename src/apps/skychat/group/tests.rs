//! Tests across the group modules.
