"""Load tests (Locust) and the serving benchmark of movierec; see README "Load testing"."""
