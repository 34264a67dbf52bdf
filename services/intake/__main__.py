import uvicorn

from .settings import IntakeSettings

if __name__ == "__main__":
    settings = IntakeSettings()
    uvicorn.run(
        "services.intake.app:build_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
