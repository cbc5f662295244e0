"""Speech engines behind small interfaces; `registry.build_engines` picks them per profile/task."""
