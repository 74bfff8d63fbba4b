-- What the policy judged: the Kubernetes verb the API server derives for a
-- proxied request, and the identity a caller impersonated with a
-- kubernetes.impersonate grant (beside the portal identity in subject/groups).
ALTER TABLE audit_records ADD COLUMN verb TEXT;
ALTER TABLE audit_records ADD COLUMN impersonated_user TEXT;
ALTER TABLE audit_records ADD COLUMN impersonated_groups TEXT NOT NULL DEFAULT '[]';
