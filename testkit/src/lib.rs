//! placeholder until the fixtures land
