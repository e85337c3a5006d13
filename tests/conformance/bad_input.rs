use super::Db;
