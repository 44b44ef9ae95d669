"""CompoundEye service: the review API, its database models and migrations, and the evidence store.

May import ``vision`` types, SQLAlchemy and the object-store client; the app is built by
:func:`service.app.create_app`.
"""
