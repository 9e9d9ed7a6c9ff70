select customer_id, sum(amount) as revenue, '{{ invocation_id }}' as built_by
from {{ ref('stg_stripe__charges') }}
group by customer_id
