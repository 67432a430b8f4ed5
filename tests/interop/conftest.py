from tests.interop.speaker_proc import speaker_factory

__all__ = ["speaker_factory"]
