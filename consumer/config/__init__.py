"""Configuration: the models (`consumer.config.model`) and loading (`consumer.config.load`)."""
