//! Integration tests live in the t*.rs files of this directory.
