################################################################################
#
# storybot
#
################################################################################

# Built from the source tree this external tree sits in (BR2_EXTERNAL=.../buildroot).
STORYBOT_VERSION = local
STORYBOT_SITE = $(BR2_EXTERNAL_STORYBOT_PATH)/..
STORYBOT_SITE_METHOD = local
STORYBOT_DEPENDENCIES = python3 host-python3
# tomli: the Duo images' Python 3.9 has no tomllib; robot/config.py falls back to it.
STORYBOT_TOMLI = tomli-2.0.1-py3-none-any.whl
STORYBOT_EXTRA_DOWNLOADS = https://files.pythonhosted.org/packages/py3/t/tomli/$(STORYBOT_TOMLI)

STORYBOT_MARCH = $(call qstrip,$(BR2_PACKAGE_STORYBOT_MARCH))
STORYBOT_KERNEL_FLAGS = -O3 -std=c11 -fPIC -shared -Wall -Wno-unused-function \
	$(if $(STORYBOT_MARCH),-march=$(STORYBOT_MARCH))

# The kernel is a plain shared library; the robot package loads it through cffi's
# ABI mode, so nothing is compiled against Python here.
define STORYBOT_BUILD_CMDS
	$(TARGET_CC) $(TARGET_CFLAGS) $(STORYBOT_KERNEL_FLAGS) $(TARGET_LDFLAGS) \
		-Wl,-soname,libstorybot.so -o $(@D)/libstorybot.so $(@D)/_kernel/*.c -lm
endef

define STORYBOT_INSTALL_TARGET_CMDS
	rm -rf $(TARGET_DIR)/usr/lib/storybot
	mkdir -p $(TARGET_DIR)/usr/lib/storybot/robot $(TARGET_DIR)/var/lib/storybot
	cd $(@D) && find robot -name '*.py' -exec $(INSTALL) -D -m 0644 {} $(TARGET_DIR)/usr/lib/storybot/{} \;
	# the built-in stories260K: a story before any model is copied to the board
	cd $(@D) && find robot/data -type f -exec $(INSTALL) -D -m 0644 {} $(TARGET_DIR)/usr/lib/storybot/{} \;
	$(INSTALL) -m 0755 $(@D)/libstorybot.so $(TARGET_DIR)/usr/lib/storybot/robot/libstorybot.so
	$(INSTALL) -m 0644 $(@D)/_kernel/storybot.h $(TARGET_DIR)/usr/lib/storybot/robot/storybot.h
	$(HOST_DIR)/bin/python3 -m zipfile -e $(STORYBOT_DL_DIR)/$(STORYBOT_TOMLI) $(TARGET_DIR)/usr/lib/storybot/
	$(INSTALL) -D -m 0755 $(@D)/tools/duo/storybot.sh $(TARGET_DIR)/usr/bin/storybot
	$(INSTALL) -D -m 0644 $(@D)/tools/duo/storybot.toml $(TARGET_DIR)/etc/storybot/storybot.toml
endef

define STORYBOT_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(@D)/systemd/S99storybot $(TARGET_DIR)/etc/init.d/S99storybot
endef

define STORYBOT_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(@D)/systemd/storybot.service $(TARGET_DIR)/usr/lib/systemd/system/storybot.service
endef

$(eval $(generic-package))
