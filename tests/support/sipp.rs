//! SIPp runner: placeholder, filled in below.
