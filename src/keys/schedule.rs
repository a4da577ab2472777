//! Policy timers: expiry, unused deadline, rotation grace end, auto-rotation, next deadline.
