//! Full-text search on PostgreSQL. (Being built: see issue 15.)
