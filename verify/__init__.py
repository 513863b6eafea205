"""`make verify`: the fault and adversarial scenarios, against real processes of its own."""
