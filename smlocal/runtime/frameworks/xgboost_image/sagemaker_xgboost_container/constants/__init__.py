"""Constants of the XGBoost image."""
