"""Browser tests of the stand-in's live inspector page (Playwright driving headless Chromium)."""
