-- The audit trail is filtered by cluster case-insensitively, as cluster
-- names are matched everywhere: index what the filter compares, so that it
-- is a search, not a scan of the whole trail.
DROP INDEX audit_records_cluster;
CREATE INDEX audit_records_cluster ON audit_records (lower(cluster), id);
