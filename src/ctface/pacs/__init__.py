"""The PACS loop (``ctface pacs``): CT studies pulled from a DICOMweb server are identified by
their face and answered in the same study, never changing the originals.

Modules: ``report`` (the answer as DICOM: the identification Structured Report, and a Key
Object Selection flagging a series whose face is not its header's PatientID), ``sync`` (new
studies from Orthanc's change feed or QIDO-RS, pulled with WADO-RS, identified, answered with
STOW-RS; the loop's place and each study's outcome kept in the gallery).
"""
