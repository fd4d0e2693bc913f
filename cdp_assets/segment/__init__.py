"""segment source system: client, assets, schedules and sensors."""
