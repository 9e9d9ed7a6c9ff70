-- SHOP_BREAK_CHARGES=true makes the not_null test on charge_id fail.
select
    {% if env_var('SHOP_BREAK_CHARGES', 'false') == 'true' %} null {% else %} id {% endif %} as charge_id,
    customer_id,
    amount,
    '{{ invocation_id }}' as built_by
from {{ source('stripe', 'charges') }}
