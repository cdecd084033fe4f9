"""Shared code of the fraud-detection Lambdas, shipped as a layer together with the project's sql/.

Modules: settings (env vars), dataapi (Redshift Data API client), sqlfiles (locating, templating and
splitting SQL), migrations, queries, alerts (score_and_alert), training (train_model),
actions (act_on_alert), custom_resource (CloudFormation responses).
"""
