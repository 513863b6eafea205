"""The import pipeline: parse → COPY into a staging table → validate set-wise in SQL → merge.

Readings never go through Django model instances. A batch's rows are staged once, checked as a
set (a structural problem fails the whole batch before anything is merged), then merged in
chunks of registers, each chunk one transaction that also refreshes the rollups it touched and
advances the batch's checkpoint, so a worker that dies mid-import resumes where it stopped.
"""
