-- dbt: what a step's dbt run did (run_results.json, summarised per node) or, for the
-- `dbt_select` step, which sources a run's events mapped to and why. JSON text (docs/dbt.md).
ALTER TABLE run_actions ADD COLUMN dbt TEXT;
