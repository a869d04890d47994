"""The SageMaker service: typed operations, state machines and the persistent store. No HTTP here."""
