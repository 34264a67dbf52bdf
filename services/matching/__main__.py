import uvicorn

from .settings import MatchingSettings

if __name__ == "__main__":
    settings = MatchingSettings()
    uvicorn.run(
        "services.matching.app:build_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
