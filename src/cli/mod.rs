//! The `imagegate` command line.
