pub mod commands;
pub mod data;
pub mod fsutil;
pub mod model;
