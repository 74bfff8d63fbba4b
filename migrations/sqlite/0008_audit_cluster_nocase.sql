-- The audit trail's cluster index compares names without case by their
-- collation, not by an index on lower(cluster): SQLite computes such an
-- expression for every inserted row by calling a function, and a statement
-- that calls one keeps a journal of every page it touches, so that it could
-- undo itself alone. NOCASE folds ASCII letters, as lower() does.
DROP INDEX audit_records_cluster;
CREATE INDEX audit_records_cluster ON audit_records (cluster COLLATE NOCASE, id);
