-- Backstage's dashboard fields: which dashboard `dashboard_url` is
-- (`dashboardApp`) and the parameters of its links (`dashboardParameters`,
-- a JSON object stored as text).
ALTER TABLE clusters ADD COLUMN dashboard_app TEXT;
ALTER TABLE clusters ADD COLUMN dashboard_parameters TEXT;
