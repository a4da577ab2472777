//! Per-owner limits: which of an owner's keys may be issued, in creation order.
