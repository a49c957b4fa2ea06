"""One module per engine. Each exposes a driver implementing `sl.llm.driver.Driver`."""
