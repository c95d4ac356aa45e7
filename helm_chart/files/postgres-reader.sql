-- The aggregator's read-only PostgreSQL role (readOnlyUsers in values.yaml):
-- it may log in, read every table of the schema public (those there now and
-- those the writer creates later, such as consumer-high's tables on its
-- first start) and nothing else; its sessions start read-only. Idempotent:
-- the chart's db-users Job runs it at every install and upgrade, as the
-- database's owner. By hand, for a PostgreSQL you manage yourself:
--
--   psql "host=... dbname=streamproc user=postgres" -v ON_ERROR_STOP=1 \
--     -v reader=streamproc_reader -v password='...' -v writer=postgres \
--     -f helm_chart/files/postgres-reader.sql
--
-- writer: the role that creates the tables (timescaledb.user). On
-- PostgreSQL 14 and older, every role may create tables in public unless
-- you `REVOKE CREATE ON SCHEMA public FROM PUBLIC` (15 and newer do so).
SELECT format('CREATE ROLE %I LOGIN', :'reader')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'reader', :'password') \gexec
SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', :'reader') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'reader') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'reader') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'reader') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT ON TABLES TO %I',
              :'writer', :'reader') \gexec
