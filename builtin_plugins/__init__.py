"""Provider plugins bundled with hermes-cron (installed as ``hermes_cron_builtin_plugins``)."""
