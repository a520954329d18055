//! Tests of the compiler: one precise diagnostic per mistake, positions, and models.
