//! The shipped configs are accepted by `handoff check` as they are (given their variables).

use std::process::Command;

const VARIABLES: [(&str, &str); 16] = [
    ("FIVETRAN_WEBHOOK_SECRET", "fivetran-secret-for-check"),
    ("DBT_CLOUD_URL", "https://ab123.us1.dbt.com"),
    ("DBT_CLOUD_API_TOKEN", "t"),
    ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x"),
    ("AIRBYTE_WEBHOOK_TOKEN", "airbyte-token-for-check"),
    ("DBT_CLOUD_WEBHOOK_SECRET", "dbt-cloud-secret-for-check"),
    ("ELEMENTARY_WEBHOOK_URL", "https://elementary.example/webhook"),
    ("ELEMENTARY_WEBHOOK_SECRET", "e"),
    ("HANDOFF_AIRFLOW_SECRET", "whsec_aGFuZG9mZi1haXJmbG93LXNlY3JldA=="),
    ("DASHBOARD_REFRESH_URL", "https://bi.example.com/api/refresh/sales"),
    ("DASHBOARD_API_TOKEN", "Bearer b"),
    ("ELEMENTARY_PROD_WEBHOOK_URL", "https://elementary.example/webhooks/prod"),
    ("ELEMENTARY_PROD_WEBHOOK_SECRET", "elementary-prod-secret-for-check"),
    ("ELEMENTARY_STAGING_WEBHOOK_URL", "https://elementary.example/webhooks/staging"),
    ("ELEMENTARY_STAGING_WEBHOOK_SECRET", "elementary-staging-secret-for-check"),
    ("PAGERDUTY_ROUTING_KEY", "pagerduty-routing-key-for-check"),
];

#[test]
fn every_example_config_and_the_bundled_one_pass_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut configs: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    assert!(configs.len() >= 4, "the four documented examples exist");
    configs.push(root.join("handoff.toml"));
    for config in configs {
        let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .arg("check")
            .arg("--config")
            .arg(&config)
            .envs(VARIABLES)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {}", config.display(), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("plan:"), "{}: every example has a job:\n{stdout}", config.display());
        for (_, value) in VARIABLES.iter().filter(|(name, _)| name.contains("SECRET") || name.contains("TOKEN")) {
            assert!(!stdout.contains(&format!(" {value}\n")), "{}: a secret was printed", config.display());
        }
    }
}
