-- Depends on both connectors' data. `built_by` (every model has it) names the dbt invocation
-- that built the table, so a test can tell which tables a run rebuilt.
select c.customer_id, c.email, r.revenue, '{{ invocation_id }}' as built_by
from {{ ref('contacts') }} c
left join {{ ref('revenue') }} r using (customer_id)
