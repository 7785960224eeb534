#pragma once
#define BIT1 0x00000002
#define BIT0 0x00000001
