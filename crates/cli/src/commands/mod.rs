pub mod audit;
pub mod dev;
