-- alive_worker 1.1 -> 1.2: trust (SECURITY.md) and what the status view adds.
-- A fresh CREATE EXTENSION runs 1.0, 1.1 and then this script, so that
-- installed and updated databases have the same objects.  Complain if this
-- script is run directly, not by CREATE or ALTER EXTENSION.
\echo Use "ALTER EXTENSION alive_worker UPDATE TO '1.2'" to load this file. \quit
