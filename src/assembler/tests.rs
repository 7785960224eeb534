//! Unit and property tests of the assembler.
